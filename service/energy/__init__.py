"""Energy and the administration office's reports: intervals and tariffs, monthly reports, violations and fines,
the quarterly summary, CSV/xlsx exports.
"""
