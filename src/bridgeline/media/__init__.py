"""Pure media layer: RTP, G.711, jitter buffering, mixing, players and DTMF.

No I/O, threads or clocks in here: the transport and the tick scheduler live elsewhere and pass
packets, timestamps and frames in.
"""
