"""Local sandboxes that speak Zuora's and Salesforce's wire protocols.

They let the sync run end to end, and its tests prove it, without a real Zuora tenant or
Salesforce org: unmodified real clients (simple-salesforce, the Airflow Salesforce provider,
Zuora's SDK) talk to them over real HTTP.
"""
