"""Speech recognition pieces: letter dictionary, CTC decoding, n-gram language models, error rates."""
