from recbole_fame.model.fame import FAME

__all__ = ["FAME"]
