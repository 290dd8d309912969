"""integration_pipelines: orchestrated, tested pipelines between a business's SaaS systems."""

__version__ = "0.1.0"
