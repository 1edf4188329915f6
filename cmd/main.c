/* main.c: placeholder until the command dispatcher lands. */
#include <stdio.h>
int main(void)
{
    fputs("mailsync: not built yet\n", stderr);
    return 2;
}
