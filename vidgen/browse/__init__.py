"""Looking at what was made: the output catalog, the gallery page, previews and run history."""
