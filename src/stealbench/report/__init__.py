"""Reports: result tables, findings text and figures (three roles, three modules)."""
