#compdef xlbctl
# zsh completion for xlbctl (printed by "xlbctl completion zsh").
# Install it as _xlbctl in a directory of $fpath before compinit runs, or
# load it after compinit with: source <(xlbctl completion zsh)
#
# Candidates come from "xlbctl __complete WORD...": commands and flags from
# xlbctl's own table, service keys and backend addresses from the running
# xlbd (none when it cannot be reached within a second).

_xlbctl() {
	local -a cands
	# (Q): the words unquoted, as typed; zsh inserts an IPv6 key it
	# completed as \[2001:2::1\]:443/tcp.
	cands=(${(f)"$(${words[1]} __complete "${(@Q)words[2,CURRENT]}" 2>/dev/null)"})
	(( ${#cands} )) || return 1
	compadd -- "${cands[@]}"
}

if [[ ${funcstack[1]} == _xlbctl ]]; then
	_xlbctl "$@"
else
	compdef _xlbctl xlbctl
fi
