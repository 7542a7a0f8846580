"""Baselines that use no pretrained model, so a transferred model's gain (or loss) is visible."""
