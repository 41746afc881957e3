"""The membership audit: its computation over model outputs, its result model, its plugin and its report section."""
