# SPDX-License-Identifier: MIT
# bash completion for mailsync
_mailsync_commands='pull push sync fetch status check folders watch import help'

_mailsync()
{
    local cur prev words cword split
    _init_completion -s || return
    case $prev in
        -c|--config) _filedir; return ;;
        --progress) COMPREPLY=($(compgen -W 'auto always never' -- "$cur")); return ;;
        --folder|--interval|-j|--jobs) return ;;
        --from) COMPREPLY=($(compgen -W 'mbsync offlineimap' -- "$cur")); return ;;
    esac
    $split && return # --opt=value of an option without listed values
    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W '-c --config= -v --verbose -q --quiet --progress= --json --dry-run --folder=
                                  --force --interval= --jobs= --from= --write --all --version -h --help' -- "$cur"))
        # an option that takes its value after '=': no space after it
        [[ ${#COMPREPLY[@]} -eq 1 && ${COMPREPLY[0]} == *= ]] && compopt -o nospace
        return
    fi
    local i cmd= cfg=${MAILSYNC_CONFIG:-${XDG_CONFIG_HOME:-$HOME/.config}/mailsync/config}
    for ((i = 1; i < cword; i++)); do
        case ${words[i]} in
            -c|--config) cfg=${words[i+1]}; ((i++)) ;;
            --config=*) cfg=${words[i]#--config=} ;;
            --progress|--folder|--interval|--from|-j|--jobs) ((i++)) ;;
            -*) ;;
            *) cmd=${words[i]}; break ;;
        esac
    done
    cfg=${cfg/#\~/$HOME}
    if [[ -z $cmd ]]; then
        COMPREPLY=($(compgen -W "$_mailsync_commands" -- "$cur"))
    elif [[ $cmd == import ]]; then
        _filedir
    elif [[ $cmd == fetch ]]; then # accounts, then placeholder files
        _filedir
        COMPREPLY+=($(compgen -W "$(sed -n 's/^[[:space:]]*\[account[[:space:]]\+\([^]]*\)\].*/\1/p' "$cfg" 2>/dev/null)" -- "$cur"))
    elif [[ $cmd == help ]]; then
        COMPREPLY=($(compgen -W "${_mailsync_commands% help}" -- "$cur"))
    elif [[ -r $cfg ]]; then
        COMPREPLY=($(compgen -W "$(sed -n 's/^[[:space:]]*\[account[[:space:]]\+\([^]]*\)\].*/\1/p' "$cfg")" -- "$cur"))
    fi
} &&
complete -F _mailsync mailsync
