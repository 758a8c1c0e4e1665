"""What the tests share: running the real ``rkpipe`` CLI, graph files, a mosquitto broker,
a reference decoder and stages written for tests (``support/stages``)."""
