"""Curriculum service: ``core`` (pure logic), ``trainer`` (the loop), ``adapters`` (Ray, MLflow, files), ``cli``."""
