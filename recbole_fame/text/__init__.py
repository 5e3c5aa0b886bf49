"""Text-enhanced facet-aware pre-training of item embeddings (the extended FAME, ``text_pretrain``).

:mod:`~recbole_fame.text.encoder` (the packaged sentence encoder and its vector cache),
:mod:`~recbole_fame.text.pretrain` (the pre-training and the model initialisation),
:mod:`~recbole_fame.text.alignment` (kNN label accuracy of embeddings) and
:mod:`~recbole_fame.text.evaluation` (metrics on the least-interacted targets).
"""
