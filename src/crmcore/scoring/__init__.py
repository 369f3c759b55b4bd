"""Scores computed from the stored history: RFM, lifetime value, churn, intervals, offers,
leads and service quality. Each scorer can explain its verdict; see `registry`."""
