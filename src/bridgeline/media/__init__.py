"""Pure media layer: RTP, G.711, jitter buffering, mixing, players, DTMF, and the media runtime
(`runtime.py`: legs, routes and the 20 ms tick, driven by datagrams and `now`).

No I/O, threads or clocks in here: the shell (the SIP carrier's media engine) owns the sockets,
the clock and the thread, and passes datagrams and timestamps in.
"""
