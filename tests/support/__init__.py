"""What the tests share: running the real ``rkpipe`` CLI, graphs built in code (``graph``),
a mosquitto broker, a reference decoder and stages written for tests (``support/stages``)."""
