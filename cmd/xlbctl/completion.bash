# bash completion for xlbctl (printed by "xlbctl completion bash").
# Load it with: source <(xlbctl completion bash)
#
# Candidates come from "xlbctl __complete WORD...": commands and flags from
# xlbctl's own table, service keys and backend addresses from the running
# xlbd (none when it cannot be reached within a second).

_xlbctl() {
	local line=${COMP_LINE:0:COMP_POINT}
	local -a words
	# Split the line ourselves, on blanks only: COMP_WORDS splits a service
	# key VIP:PORT/PROTO at its colons (COMP_WORDBREAKS).
	read -r -a words <<<"$line"
	if [[ -z $line || $line == *[[:blank:]] ]]; then
		words+=("")
	fi
	local cur=${words[${#words[@]}-1]}
	# mapfile, not COMPREPLY=($(...)): that would glob-expand each
	# candidate, and an IPv6 key [2001:2::1]:443/tcp is a pattern (gone
	# under nullglob, an error under failglob, a file name if one matches).
	mapfile -t COMPREPLY < <("${words[0]}" __complete "${words[@]:1}" 2>/dev/null)
	# bash replaces only the part of the word after its last break
	# character; when ':' is one, drop what precedes it from each
	# candidate (as bash-completion's __ltrim_colon_completions does).
	if [[ $cur == *:* && $COMP_WORDBREAKS == *:* ]]; then
		local prefix=${cur%"${cur##*:}"}
		local i
		for i in "${!COMPREPLY[@]}"; do
			COMPREPLY[i]=${COMPREPLY[i]#"$prefix"}
		done
	fi
}

complete -F _xlbctl xlbctl
