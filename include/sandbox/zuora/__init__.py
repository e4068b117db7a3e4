"""The Zuora sandbox: a tenant behind Zuora's REST wire format (OAuth, Data Query, ZOQL, actions)."""
