"""The gateway the frontend talks to during the cutover: a reverse proxy with modes (direct,
shadow, canary), client buckets, a shadow differ and an admin API on a loopback port."""
