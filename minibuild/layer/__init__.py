"""Layer tars in and out: every format quirk (whiteouts, xattrs, compression) lives here."""
