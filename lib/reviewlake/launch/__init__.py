"""Launchers: spark-submit arguments, the code bundle, EMR steps and SageMaker jobs."""
