"""The one-run canary audit: its bound, its scores and result model, its plugin and its report section."""
