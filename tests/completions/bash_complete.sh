# SPDX-License-Identifier: MIT
# bash_complete.sh FILE LINE: the completions bash offers for LINE<TAB> with
# the completion script FILE, one per line; compopt calls go to fd 3.
source /usr/share/bash-completion/bash_completion
source "$1"
compopt() { printf 'compopt %s\n' "$*" >&3; }
# words as readline splits them: blanks separate, '=' is a word of its own
line=$2
COMP_LINE=$line; COMP_POINT=${#line}
COMP_WORDS=()
for w in $line; do
    while [[ $w == *=* ]]; do
        [[ -n ${w%%=*} ]] && COMP_WORDS+=("${w%%=*}")
        COMP_WORDS+=("="); w=${w#*=}
    done
    [[ -n $w ]] && COMP_WORDS+=("$w")
done
[[ $line == *' ' ]] && COMP_WORDS+=("")
COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
_mailsync mailsync "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
printf '%s\n' "${COMPREPLY[@]}"
