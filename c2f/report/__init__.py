"""Savings analysis: the paper's tables, plots and a dashboard from run directories (files only)."""
