"""glibc's own account of the process's heap (``mallinfo2``, glibc 2.33 and later): the memory its
live allocations hold now. Resident memory is that, the freed memory the allocator keeps instead
of returning it to the kernel, and what lies outside the allocator."""

import ctypes


class _Info(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]


_libc = None


def _mallinfo():
    """glibc's ``mallinfo2()``; ``OSError`` or ``AttributeError`` where there is none."""
    global _libc
    if _libc is None:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = _Info
        _libc = libc
    return _libc.mallinfo2()


def in_use_bytes():
    """Bytes the process's live allocations hold (heap chunks in use plus mapped ones)."""
    info = _mallinfo()
    return info.uordblks + info.hblkhd

