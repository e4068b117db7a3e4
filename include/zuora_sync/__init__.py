"""Zuora → Salesforce sync on Apache Airflow.

The package holds what the DAGs use: the Zuora hook, the Salesforce bulk loader, operators, the
real-time sensor and trigger, the object mapping, the state store, the web app and the settings.
"""
