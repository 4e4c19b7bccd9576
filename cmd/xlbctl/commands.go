package main

// commands is the command table. Noun commands (status, stats, flows,
// list) only read; verb commands (add, set, del, drain) change the running
// state. Every change goes through xlbd, which validates it whole and
// applies all of it or nothing.
var commands = []command{
	{
		name:    "status",
		flags:   "[-o table|json]",
		summary: "show the data plane, each service and its backends' state",
		help: `
Shows the interface xlbd runs on, its XDP mode, version and number of flows,
then each service with its health check and a table of its backends: weight,
state (up, down, drain or no-mac), Ethernet address, packets and new flows
forwarded, the reason for the state and how long the backend has been in it.
Like ipvsadm -L -n.`,
		examples: []string{
			"xlbctl status",
			"xlbctl status -o json | jq '.services[].backends[] | select(.state != \"up\")'",
		},
		setup: status,
	},
	{
		name:    "stats",
		flags:   "[-o table|json]",
		summary: "show packets, bytes, new flows and drops per service and backend",
		help: `
Shows the counters of each service and of its backends: packets and bytes
forwarded, new flows, and packets dropped because no backend was usable.
Like ipvsadm -L -n --stats.`,
		examples: []string{
			"xlbctl stats",
			"xlbctl stats -o json",
		},
		setup: stats,
	},
	{
		name:    "flows",
		flags:   "[--limit N] [-o table|json]",
		summary: "list connection-table entries: client, VIP, backend, idle time",
		help: `
Lists the entries of the connection table, which keeps each flow on its
backend: protocol, client, VIP, backend and the time since the flow's last
packet. Like ipvsadm -L -n -c.`,
		examples: []string{
			"xlbctl flows",
			"xlbctl flows --limit 50000 -o json",
		},
		setup: flows,
	},
	{
		name:    "bgp",
		flags:   "[-o table|json]",
		summary: "show the BGP sessions and the announced VIPs",
		help: `
Shows each BGP peer: its AS, the session's state and how long it has been in
it, the negotiated hold time and the UPDATE messages sent and received, then
the host routes announced. A VIP is announced while its services have a
usable backend (see vip_policy in the bgp section of the config).`,
		examples: []string{
			"xlbctl bgp",
			"xlbctl bgp -o json | jq '.peers[] | select(.state != \"established\")'",
		},
		setup: bgpStatus,
	},
	{
		name:    "service add",
		args:    "VIP:PORT/PROTO",
		flags:   "[--backend ADDR[=WEIGHT]]... [--scheduler NAME] [--check TYPE] [FLAGS]",
		summary: "create a service",
		help: `
Creates a service, with its backends and health check (like ipvsadm -A and
-a). PROTO is tcp or udp. Give each backend with --backend: its address, or
ADDR=WEIGHT for a weight other than 1 (weights are relative shares of new
flows, 0-65535; 0 takes none). IPv6 backends may be plain or in brackets.

Without check flags the service has no health check: its backends count as
up once their MAC address is known. Any check flag adds a check; its type is
tcp unless --check says otherwise (or an --http-* flag implies http).`,
		examples: []string{
			"xlbctl service add 198.18.1.1:80/tcp --backend 198.18.0.11 --backend 198.18.0.12=2",
			"xlbctl service add 198.18.1.1:443/tcp --backend 198.18.0.11 --check http --http-path /healthz --http-expect 200,204",
			"xlbctl service add '[2001:2::1]:53/udp' --scheduler source-hash --backend 2001:2::11 --backend '[2001:2::12]=3' --check icmp",
		},
		setup: serviceAdd,
	},
	{
		name:    "service set",
		args:    "VIP:PORT/PROTO",
		flags:   "[--backend ADDR[=WEIGHT]]... [--scheduler NAME] [--check TYPE] [FLAGS]",
		summary: "change a service's settings",
		help: `
Changes the settings the flags name and keeps the others (like ipvsadm -E).
Check flags change the service's health check, or add one. --check with a
new type drops the settings the old type alone had (the http ones, the
port for icmp and none). Backends stay as they are unless --backend is given:
then the service has exactly the backends given (the others are removed; use
"backend add" and "backend del" to change one).

The change is read from xlbd, modified and written back; another change to
the same service in between is overwritten.`,
		examples: []string{
			"xlbctl service set 198.18.1.1:80/tcp --scheduler source-hash",
			"xlbctl service set 198.18.1.1:80/tcp --check http --http-path /ready --rise 3 --fall 2",
			"xlbctl service set 198.18.1.1:80/tcp --backend 198.18.0.11 --backend 198.18.0.13=4",
			"xlbctl service set 198.18.1.1:80/tcp --check none  # backends always count as up",
		},
		setup: serviceSet,
	},
	{
		name:    "service del",
		args:    "VIP:PORT/PROTO",
		summary: "delete a service and its backends",
		help: `
Deletes the service and its backends (like ipvsadm -D): xlbd stops
balancing its traffic.`,
		examples: []string{
			"xlbctl service del 198.18.1.1:80/tcp",
			"xlbctl service del '[2001:2::1]:53/udp'",
		},
		setup: serviceDel,
	},
	{
		name:    "service list",
		flags:   "[-o table|json]",
		summary: "list the services",
		help: `
Lists the services with their scheduler, forwarding mode, health check type,
number of backends and how many are up.`,
		examples: []string{
			"xlbctl service list",
			"xlbctl service list -o json",
		},
		setup: serviceList,
	},
	{
		name:    "service resolve",
		args:    "VIP:PORT/PROTO",
		flags:   "[-o table|json]",
		summary: "look the service's backend names up in DNS again now",
		help: `
Asks xlbd to resolve the DNS names among the service's backends now, rather
than at their next refresh (the record's TTL, within the resolvers section's
min_refresh and max_refresh), and prints for each name the addresses added,
removed and kept. Added ones are health-checked like any new backend;
removed ones are drained until their flows end. A failed lookup changes
nothing: the name keeps its last good set, and the error is shown.`,
		examples: []string{
			"xlbctl service resolve 198.18.1.1:80/tcp",
			"xlbctl service resolve 198.18.1.1:80/tcp -o json",
		},
		setup: serviceResolve,
	},
	{
		name:    "backend add",
		args:    "VIP:PORT/PROTO ADDR",
		flags:   "[--weight N]",
		summary: "add a backend to a service",
		help: `
Adds backend ADDR, an IPv4 or IPv6 address, to the service (like ipvsadm
-a -g). Its weight is its relative share of new flows, 0-65535, default 1.`,
		examples: []string{
			"xlbctl backend add 198.18.1.1:80/tcp 198.18.0.13",
			"xlbctl backend add '[2001:2::1]:443/tcp' 2001:2::13 --weight 2",
		},
		setup: backendAdd,
	},
	{
		name:    "backend set",
		args:    "VIP:PORT/PROTO ADDR",
		flags:   "--weight N",
		summary: "change a backend's weight",
		help: `
Sets the weight of backend ADDR of the service (like ipvsadm -e -w): its
relative share of new flows, 0-65535. Weight 0 drains the backend; a weight
above 0 undrains it.`,
		examples: []string{
			"xlbctl backend set 198.18.1.1:80/tcp 198.18.0.13 --weight 3",
			"xlbctl backend set 198.18.1.1:80/tcp 198.18.0.11 --weight 1  # undo a drain",
		},
		setup: backendSet,
	},
	{
		name:    "backend del",
		args:    "VIP:PORT/PROTO ADDR",
		summary: "remove a backend from a service",
		help: `
Removes backend ADDR from the service at once (like ipvsadm -d): its flows
move to the other backends, which breaks its TCP connections. To let them
finish, drain it first and remove it once "xlbctl flows" shows none left.`,
		examples: []string{
			"xlbctl backend del 198.18.1.1:80/tcp 198.18.0.13",
		},
		setup: backendDel,
	},
	{
		name:    "backend drain",
		args:    "VIP:PORT/PROTO ADDR",
		summary: "stop sending new flows to a backend, keeping its flows",
		help: `
Sets the weight of backend ADDR of the service to 0: its established flows
continue, new flows go to the other backends (like ipvsadm -e -w 0). Undo it
with "backend set ... --weight N".

With --wait it then reads the backend's active flows every second, prints
the count when it changes and exits 0 once it is 0, or 1 after --timeout
(default 5m) with the count left. A TCP flow leaves the count as soon as
the client's FIN or RST passes the balancer; a flow that just goes idle (UDP,
a client that vanished) leaves when it expires and xlbd's sweep (every 5s)
removes it. Ctrl-C stops waiting; the backend stays drained.`,
		examples: []string{
			"xlbctl backend drain 198.18.1.1:80/tcp 198.18.0.11",
			"xlbctl backend drain 198.18.1.1:80/tcp 198.18.0.11 --wait --timeout 10m && xlbctl backend del 198.18.1.1:80/tcp 198.18.0.11",
			"xlbctl flows | grep 198.18.0.11  # wait for its flows to end, then: backend del",
		},
		setup: backendDrain,
	},
	{
		name:    "backend list",
		args:    "VIP:PORT/PROTO",
		flags:   "[-o table|json]",
		summary: "list a service's backends and their state",
		help: `
Lists the backends of the service: weight, state (up, down, drain or no-mac),
Ethernet address, packets and new flows forwarded, the reason for the state
and how long the backend has been in it.`,
		examples: []string{
			"xlbctl backend list 198.18.1.1:80/tcp",
			"xlbctl backend list '[2001:2::1]:443/tcp' -o json",
		},
		setup: backendList,
	},
}

// fileCommands are the commands that send a config file to xlbd rather
// than change its state piece by piece. They are looked up and listed
// after commands; they are not in that table because its tests drive every
// entry with positional arguments alone, and a file command needs -f.
var fileCommands = []command{
	{
		name:    "apply",
		flags:   "--dry-run -f FILE [-o table|json]",
		summary: "show what a reload with a config file would change",
		help: `
Sends the config file to xlbd, which validates it as a reload would (the same
parser and checks) and answers what a reload with it would change in the
running state, the file's and the API's changes: services added (+), removed
(-) and changed (~), and for a changed one its settings and its backends
added, removed or reweighted. Nothing is applied. A bad file gets xlbd's
error, naming the field and the value (exit status 1).

Only --dry-run is supported: to apply the file, make it xlbd's config file
and reload (systemctl reload xlbd, or SIGHUP), which applies all of it or
nothing.`,
		examples: []string{
			"xlbctl apply --dry-run -f /etc/xlb/xlb.yaml.new",
			"xlbctl apply --dry-run -f new.yaml -o json | jq .changed",
		},
		setup: apply,
	},
	{
		name:    "backend sync",
		args:    "VIP:PORT/PROTO",
		flags:   "-f FILE [--allow-empty] [--dry-run] [-o table|json]",
		summary: "replace a service's whole backend set (autoscalers)",
		help: `
Replaces the service's backends with the set in FILE (- for stdin), in one
step that xlbd validates whole and applies all or nothing, and prints what
was added (+), removed (-), reweighted (~) and kept (=). Backends that stay
keep their flows and health state; new ones are health-checked as any added
backend; removed ones leave as with "backend del": their flows move, which
breaks their TCP connections. To let them finish, first sync the set with
the leaving backend at weight 0 (or "backend drain --wait" it), then sync
it away. The same set twice changes nothing. A set with no backend is
refused unless --allow-empty.

FILE is YAML or JSON, a list of backends as in the config file or a mapping
with that list under backends:
  - address: 198.18.0.11
  - {address: 198.18.0.12, weight: 2}
or plain text, one backend per line: ADDR, ADDR WEIGHT or ADDR=WEIGHT, an
IPv6 address plain or in brackets (2001:2::11 3, [2001:2::11]=3); "#" starts
a comment, blank lines are skipped. A file is YAML or JSON when its first
line (past blanks and comments) starts with "-", "{", "backends:", or "["
followed by "{", "]" or nothing. A bad entry is named by its line and value
and nothing is sent (exit status 1).`,
		examples: []string{
			"xlbctl backend sync 198.18.1.1:80/tcp -f pool.txt",
			"printf '198.18.0.11\\n198.18.0.12 2\\n' | xlbctl backend sync 198.18.1.1:80/tcp -f -",
			"xlbctl backend sync '[2001:2::1]:443/tcp' -f pool.yaml --dry-run -o json",
			"xlbctl backend sync 198.18.1.1:80/tcp -f /dev/null --allow-empty  # remove every backend",
		},
		setup: backendSync,
	},
}

// toolCommands are the commands that serve the person at the terminal
// rather than read or change one piece of state: a live view and shell
// completion. They are looked up and listed after the others; they are
// not in commands because its tests run every entry once against a fake
// xlbd and pin its command list, and top runs until it is stopped.
var toolCommands = []command{
	{
		name:    "top",
		flags:   "[--batch] [--iterations N] [--delay D]",
		summary: "live view of packet, bit and new-flow rates per service and backend",
		help: `
Shows each service and its backends with their rates over the latest
interval: packets per second, bits per second and new flows per second,
with the active flows of each backend (a service's is the sum of its
backends'). The rates come from the counters of two successive status
requests divided by the time between their answers; a counter that went
backwards (xlbd restarted, a backend removed and added again) counts from
zero rather than showing a huge or negative rate. Like ipvsadm -L --rate,
refreshed like top.

Keys: q (or Esc, Ctrl-C) quits; p, b, n, a and s sort by pps, bits/s,
new/s, active and name; r reverses the order. Services are sorted among
themselves and each service's backends under it. When xlbd cannot be
reached, the view says so and keeps retrying.

With --batch, or when stdout is not a terminal, it prints a plain text
frame every --delay instead, the first after one delay (so that every frame
has rates), until --iterations frames or Ctrl-C. Rates are shown with SI
suffixes (k, M, G); "-" is a row new since the previous sample. In batch
mode xlbd unreachable at the start is an error (exit 1); later, the frame
says so and top goes on.`,
		examples: []string{
			"xlbctl top",
			"xlbctl top --batch --iterations 3 --delay 2s",
			"xlbctl top -b -n 1 -d 5 | grep 198.18.0.11  # the rates of one backend over 5s",
		},
		setup: top,
	},
	{
		name:    "completion",
		args:    "SHELL",
		summary: "print the shell completion script for bash or zsh",
		help: `
Prints a script that makes bash or zsh complete xlbctl's commands and flags,
and, from the running xlbd, service keys (VIP:PORT/PROTO) and the backend
addresses of the service before them. When xlbd cannot be reached within a
second, only commands and flags complete.

bash: add 'source <(xlbctl completion bash)' to ~/.bashrc.
zsh: 'xlbctl completion zsh > ~/.zfunc/_xlbctl' with ~/.zfunc in fpath
before compinit (or 'source <(xlbctl completion zsh)' after compinit).`,
		examples: []string{
			"xlbctl completion bash > /etc/bash_completion.d/xlbctl",
			"source <(xlbctl completion bash)",
			"xlbctl completion zsh > \"${fpath[1]}/_xlbctl\"",
		},
		setup: completion,
	},
}

// flowCommands are the commands about one flow. They are looked up and
// listed after commands; they are not in that table because its tests
// drive every entry with a backend address as the second argument, and a
// flow command takes a client's address and port.
var flowCommands = []command{
	{
		name:    "explain",
		args:    "VIP:PORT/PROTO CLIENT:PORT",
		flags:   "[-o table|json]",
		summary: "say which backend a client's flow goes to, and why",
		help: `
Answers "why did my request land there?" for the flow from CLIENT:PORT to
the service, from the data plane's own entries, judged as the data plane
judges them:

  next packet  where the flow's next packet goes (not a bare SYN): its
               connection-table entry, else its half-open entry (TCP), else
               as a new flow;
  new flow     where this client:port would go with no entry of its own;
  other port   where a new flow from another port of the client goes.

Then the entries: the connection-table entry (established, closing after the
client's FIN or RST, or expired beyond its timeout), the half-open entry, the
client's persistence entry, each with its idle time, and whether the data
plane uses it or ignores it (expired, its backend down or gone: the flow is
then placed afresh); the scheduler's pick (maglev and source-hash: the hash
and the slot of the live table; round-robin: each CPU's cursor; least-conn:
the candidates' active flows); and the state of every backend named.

A new flow goes to the client's persistent backend while its entry is live
and the backend usable and healthy, else to the scheduler's pick; if that
backend is not usable the packet is dropped until xlbd rebuilds the table.
Each lookup reads one key: cheap with millions of flows.`,
		examples: []string{
			"xlbctl explain 198.18.1.1:80/tcp 198.18.2.10:40000",
			"xlbctl explain '[2001:2::1]:443/tcp' '[2001:2::10]:51000' -o json | jq .next_packet",
		},
		setup: explainFlow,
	},
}
