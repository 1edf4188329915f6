# bash completion for mailsync
_mailsync()
{
    local cur prev words cword
    _init_completion || return
    case $prev in
        -c|--config) _filedir; return ;;
        --progress) COMPREPLY=($(compgen -W 'auto always never' -- "$cur")); return ;;
        --folder|--interval) return ;;
        --from) COMPREPLY=($(compgen -W 'mbsync offlineimap' -- "$cur")); return ;;
    esac
    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W '--config --verbose --quiet --progress= --json --dry-run --folder --force --interval --from --write --version --help' -- "$cur"))
        return
    fi
    local i cmd= cfg=${MAILSYNC_CONFIG:-${XDG_CONFIG_HOME:-$HOME/.config}/mailsync/config}
    for ((i = 1; i < cword; i++)); do
        case ${words[i]} in
            -c|--config) cfg=${words[i+1]}; ((i++)) ;;
            -*) ;;
            *) cmd=${words[i]}; break ;;
        esac
    done
    if [[ -z $cmd ]]; then
        COMPREPLY=($(compgen -W 'pull push sync status check folders watch import help' -- "$cur"))
    elif [[ $cmd == import ]]; then
        _filedir
    elif [[ $cmd == help ]]; then
        COMPREPLY=($(compgen -W 'pull push sync status check folders watch import' -- "$cur"))
    elif [[ -r $cfg ]]; then
        COMPREPLY=($(compgen -W "$(sed -n 's/^[[:space:]]*\[account[[:space:]]\+\([^]]*\)\].*/\1/p' "$cfg")" -- "$cur"))
    fi
} &&
complete -F _mailsync mailsync
