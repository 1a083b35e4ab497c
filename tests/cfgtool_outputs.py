"""What corosync-cfgtool 3.1.7 prints for one cluster state (reference section 4.2):
node 1 of three, two links, node 2's link 1 down. The cfg tests build this state with a
fake backend and check that our tool and the real one print exactly this."""

STATUS = """\
Local node ID 1, transport knet
LINK ID 0 udp
\taddr\t= 10.231.0.1
\tstatus:
\t\tnodeid:          1:\tlocalhost
\t\tnodeid:          2:\tconnected
\t\tnodeid:          3:\tconnected
LINK ID 1 udp
\taddr\t= 10.232.0.1
\tstatus:
\t\tnodeid:          1:\tlocalhost
\t\tnodeid:          2:\tdisconnected
\t\tnodeid:          3:\tconnected
"""

BRIEF = """\
Local node ID 1, transport knet
LINK ID 0 udp
\taddr\t= 10.231.0.1
\tstatus\t= n33
LINK ID 1 udp
\taddr\t= 10.232.0.1
\tstatus\t= n13
"""

NODES = """\
Local node ID 1, transport knet
nodeid: 2 reachable
   LINK: 0 udp (10.231.0.1->10.231.0.2) enabled connected mtu: 1397
   LINK: 1 udp (10.232.0.1->10.232.0.2) enabled mtu: 1397

nodeid: 3 reachable
   LINK: 0 udp (10.231.0.1->10.231.0.3) enabled connected mtu: 1397
   LINK: 1 udp (10.232.0.1->10.232.0.3) enabled connected mtu: 1397

"""
