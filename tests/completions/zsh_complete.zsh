# SPDX-License-Identifier: MIT
# zsh_complete.zsh DIR LINE...: for each LINE, the completions an
# interactive zsh offers for LINE<TAB> with the completion functions of DIR,
# printed as "== LINE" and one completion per line. One zsh in a
# pseudo-terminal serves every line (compinit runs once, on the system's
# completion functions only, so it is quick).
zmodload zsh/zpty
dir=$1; shift
out=${TMPDIR:-/tmp}/zshc.$$
sys=/usr/share/zsh/functions/Completion
zpty z zsh -f -i
zpty -w z "PS1=''; fpath=($dir $sys $sys/Base $sys/Zsh $sys/Unix); autoload -Uz compinit; compinit -u -D"
# every candidate offered is also appended to $out
zpty -w z "compadd() { if [[ \${@[(I)-[OAD]]} -gt 0 ]]; then builtin compadd \"\$@\"; return; fi; local -a __h; builtin compadd -A __h \"\$@\"; (( \$#__h )) && print -rl -- \$__h >> $out; builtin compadd \"\$@\"; }"
zpty -w z "zstyle ':completion:*' list-prompt ''; zstyle ':completion:*' menu no; touch $out.ready"
for i in {1..300}; do [[ -e $out.ready ]] && break; sleep 0.05; done
for line in "$@"; do
    rm -f $out
    zpty -w -n z "$line"$'\t'
    for i in {1..100}; do [[ -s $out ]] && break; sleep 0.05; done
    sleep 0.2 # the rest of the candidates of this TAB
    print -r -- "== $line"
    [[ -f $out ]] && sort -u $out
    zpty -w -n z $'\C-u' # kill the typed line
    sleep 0.1
done
zpty -d z
rm -f $out $out.ready
