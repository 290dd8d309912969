"""Connectors: one declarative spec per system, one vendor-free engine behind them all."""
