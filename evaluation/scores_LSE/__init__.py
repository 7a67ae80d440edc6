"""The published LSE scoring scripts (run as files: python evaluation/scores_LSE/calculate_scores_LRS.py)."""
