"""Analysis: robust statistics over evaluation results."""
