package milter

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestServeSurvivesDescriptorExhaustion: in a child limited to 128
// descriptors, every descriptor is taken while an MTA connects: the
// milter's accept fails with EMFILE for real. The library would return
// from Serve at the first failure (and the gateway exit); the server
// retries instead, and once descriptors are free the waiting MTA is
// served a whole transaction.
func TestServeSurvivesDescriptorExhaustion(t *testing.T) {
	if os.Getenv("MILTER_FD_CHILD") == "1" {
		exhaustMilter(t)
		return
	}
	prlimit, err := exec.LookPath("prlimit")
	if err != nil {
		t.Skip("prlimit (util-linux) is not installed")
	}
	cmd := exec.Command(prlimit, "--nofile=128:128", os.Args[0], "-test.run=^TestServeSurvivesDescriptorExhaustion$", "-test.v")
	cmd.Env = append(os.Environ(), "MILTER_FD_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "served after EMFILE") {
		t.Fatalf("child: %v\n%s", err, out)
	}
}

func exhaustMilter(t *testing.T) {
	s := startServer(t, &testCheck{})
	var hog []*os.File
	for {
		f, err := os.Open(os.DevNull)
		if err != nil {
			break
		}
		hog = append(hog, f)
	}
	if len(hog) == 0 {
		t.Fatal("no descriptor to take")
	}
	// One descriptor for the MTA's side; the server's side finds none.
	hog[len(hog)-1].Close()
	hog = hog[:len(hog)-1]
	done := make(chan string, 1)
	go func() {
		cs := session(t, s, "acme", "127.0.0.9")
		act, err := cs.Mail("a@acme.example", "")
		done <- fmt.Sprint(act.StopProcessing(), err)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for s.AcceptFailures() < 3 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if s.AcceptFailures() < 3 {
		t.Fatalf("accept failed %d times; want the descriptors exhausted", s.AcceptFailures())
	}
	for _, f := range hog {
		f.Close()
	}
	select {
	case got := <-done:
		if got != "false <nil>" {
			t.Fatalf("MAIL after the exhaustion: %s", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the MTA was not served after the descriptors came back")
	}
	fmt.Printf("served after EMFILE (%d failed accepts)\n", s.AcceptFailures())
}
