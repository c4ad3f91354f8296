"""Reading an export and turning it into training rows: the file as a whole (datafile), its rows (dataset, formats,
examples), the chat template and loss masks (render), truncation of long rows, tokenising, token-budget batches,
and the report `check` prints."""
