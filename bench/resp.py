"""Shared by the bench generators: Redis protocol (RESP) for a command, and the 13 call statuses."""

STATUSES = ["IN_QUEUE", "MISSED", "CONNECTED", "FAILED", "NOT_INTERESTED", "HANGUP", "DISCONNECTED",
            "BUSY", "POWER_OFF", "BANNED", "UNKNOWN", "INBOUND_CALL", "COMPLAINED"]


def cmd(*args):
    """One command as RESP bytes: an array of bulk strings."""
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        b = a.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)
