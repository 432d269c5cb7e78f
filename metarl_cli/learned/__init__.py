"""Learned algorithms (LPO, OPEN, No Features) as kernels for the trainer's slots."""
