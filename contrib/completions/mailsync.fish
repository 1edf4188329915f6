# SPDX-License-Identifier: MIT
# fish completion for mailsync

function __mailsync_config
    set -l tokens (commandline -opc)
    for i in (seq (count $tokens))
        switch $tokens[$i]
            case -c --config
                set -l next (math $i + 1)
                if test $next -le (count $tokens)
                    echo $tokens[$next]
                    return
                end
            case '--config=*'
                string replace -- --config= '' $tokens[$i]
                return
        end
    end
    if set -q MAILSYNC_CONFIG
        echo $MAILSYNC_CONFIG
    else if set -q XDG_CONFIG_HOME
        echo $XDG_CONFIG_HOME/mailsync/config
    else
        echo $HOME/.config/mailsync/config
    end
end

function __mailsync_accounts
    set -l cfg (__mailsync_config)
    test -r "$cfg"; or return
    string match -r -g '^\s*\[account\s+([^\]]*)\]' <$cfg
end

set -l commands pull push sync fetch status check folders watch import help
set -l account_commands pull push sync fetch status check folders watch

complete -c mailsync -f
complete -c mailsync -n "not __fish_seen_subcommand_from $commands" -a pull -d 'bring server changes down'
complete -c mailsync -n "not __fish_seen_subcommand_from $commands" -a push -d 'send local changes up'
complete -c mailsync -n "not __fish_seen_subcommand_from $commands" -a sync -d 'push, then pull'
complete -c mailsync -n "not __fish_seen_subcommand_from $commands" -a fetch -d 'replace placeholders by their message'
complete -c mailsync -n "not __fish_seen_subcommand_from $commands" -a status -d 'what the last runs did'
complete -c mailsync -n "not __fish_seen_subcommand_from $commands" -a check -d 'connect, verify TLS, log in'
complete -c mailsync -n "not __fish_seen_subcommand_from $commands" -a folders -d 'the server folders'
complete -c mailsync -n "not __fish_seen_subcommand_from $commands" -a watch -d 'stay connected and sync'
complete -c mailsync -n "not __fish_seen_subcommand_from $commands" -a import -d 'config from mbsync/OfflineIMAP'
complete -c mailsync -n "not __fish_seen_subcommand_from $commands" -a help -d 'help on a command'
complete -c mailsync -n "__fish_seen_subcommand_from $account_commands" -a '(__mailsync_accounts)' -d account
complete -c mailsync -n "__fish_seen_subcommand_from help" -a "$account_commands import"
complete -c mailsync -n "__fish_seen_subcommand_from import fetch" -F

complete -c mailsync -s c -l config -r -F -d 'config file'
complete -c mailsync -s v -l verbose -d 'more detail'
complete -c mailsync -s q -l quiet -d 'only errors'
complete -c mailsync -l progress -x -a 'auto always never' -d 'when to draw progress'
complete -c mailsync -l json -d 'one JSON object on stdout'
complete -c mailsync -l dry-run -d 'print what would change'
complete -c mailsync -l folder -x -d 'limit the run to matching folders'
complete -c mailsync -l force -d 'override the mass-deletion guard'
complete -c mailsync -l interval -x -d 'watch: full pass interval (s)'
complete -c mailsync -s j -l jobs -x -d 'accounts at once (pull, push, sync)'
complete -c mailsync -l from -x -a 'mbsync offlineimap' -d 'import: file format'
complete -c mailsync -l write -d 'import: save the config'
complete -c mailsync -l all -d 'fetch: every placeholder'
complete -c mailsync -l version -d 'print the version'
complete -c mailsync -s h -l help -d 'print help'
