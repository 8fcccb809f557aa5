/* Ends at once (static, no dynamic loader): the program that is already gone, reaped by the
 * sandbox's init, by the time the runtime could look for it in /proc. */
int main(void) { return 0; }
