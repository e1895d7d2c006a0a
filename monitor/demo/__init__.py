"""The offline demo: sample feeds served on 127.0.0.1 and the daemon watching them."""
