/* The sandbox ("pause") process of the containerd e2e tests: PID 1 of the pod, it holds
 * the namespaces, reaps orphans and exits 0 on SIGTERM or SIGINT.  Built with
 * `gcc -static -O2`, so the image needs no libc.  (A process that is PID 1 of its PID
 * namespace ignores signals it has no handler for, hence the handlers.) */
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void on_stop(int sig) {
    (void)sig;
    _exit(0);
}

static void on_child(int sig) {
    (void)sig;
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
}

int main(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sa.sa_handler = on_child;
    sa.sa_flags = SA_NOCLDSTOP | SA_RESTART;
    sigaction(SIGCHLD, &sa, NULL);
    for (;;)
        pause();
    return 0;
}
