"""Channel rules of attention modules (filled below)."""
