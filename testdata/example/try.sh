#!/bin/sh
# Printed by `make run`: queries to try against the example node.
cat <<'TRY'

gslbd example: DNS on 127.0.0.1:5353, status page http://127.0.0.1:8053/

  dig @127.0.0.1 -p 5353 www.gslb.example.com +subnet=127.0.1.0/24      # a client in Germany  -> fra
  dig @127.0.0.1 -p 5353 www.gslb.example.com +subnet=127.0.2.0/24      # a client in the US   -> iad
  dig @127.0.0.1 -p 5353 www.gslb.example.com +subnet=127.0.3.0/24      # a client in Japan    -> sin
  dig @127.0.0.1 -p 5353 www.gslb.example.com AAAA +subnet=127.0.1.0/24 # IPv6 VIPs of fra
  dig @127.0.0.1 -p 5353 api.gslb.example.com +subnet=127.0.1.0/24      # health-checked pool
  curl -X POST http://127.0.10.1:8080/fail; curl -X POST http://127.0.10.2:8080/fail
                                                                        # fail fra's backends: api moves
  dig @127.0.0.1 -p 5353 cdn.gslb.example.com +short                    # weighted 60/30/10
  dig @127.0.0.1 -p 5353 gslb.example.com SOA                           # apex
  dig @127.0.0.1 -p 5353 nope.gslb.example.com                          # NXDOMAIN with SOA
  bin/gslbd explain www.gslb.example.com A -client 127.0.1.9            # why that answer
  bin/gslbd status                                                      # verdicts and votes

TRY
