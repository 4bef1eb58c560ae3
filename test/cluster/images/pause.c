/*
 * pause: the sandbox ("infra") process of a Kubernetes pod, for the local e2e cluster.
 * It holds the pod's namespaces open and does nothing else: it blocks until SIGINT or
 * SIGTERM and, as PID 1 of a shared PID namespace, reaps zombie children, as the upstream
 * pause does. Built with `gcc -static` by test/cluster/lib/images.sh (no registry to pull
 * the upstream image from).
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define VERSION "3.10-model-csi-test"

static void on_stop(int sig) {
  /* write(2) is async-signal-safe; printf is not. */
  static const char msg[] = "pause: shutting down\n";
  (void)sig;
  (void)!write(STDERR_FILENO, msg, sizeof msg - 1);
  _exit(0);
}

static void on_child(int sig) {
  (void)sig;
  while (waitpid(-1, NULL, WNOHANG) > 0) {
  }
}

int main(int argc, char **argv) {
  if (argc == 2 && strcmp(argv[1], "-v") == 0) {
    printf("pause.c %s\n", VERSION);
    return 0;
  }
  if (getpid() != 1)
    fprintf(stderr, "pause: warning: not running as PID 1\n");

  struct sigaction stop = {.sa_handler = on_stop};
  struct sigaction child = {.sa_handler = on_child, .sa_flags = SA_NOCLDSTOP | SA_RESTART};
  sigemptyset(&stop.sa_mask);
  sigemptyset(&child.sa_mask);
  if (sigaction(SIGINT, &stop, NULL) < 0 || sigaction(SIGTERM, &stop, NULL) < 0 ||
      sigaction(SIGCHLD, &child, NULL) < 0) {
    perror("pause: sigaction");
    return 1;
  }

  for (;;)
    pause();
  fprintf(stderr, "pause: error: infinite loop terminated\n");
  return 42;
}
