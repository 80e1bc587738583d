// ctrload runs inside a test container (built with CGO_ENABLED=0: the
// image holds nothing else). It listens on 127.0.0.1 in the container's own
// network namespace, prints "ready PORT", and for each line read on stdin
// makes one connection to itself (connect, write, close; accept, read,
// close) and prints "done CLIENTPORT". It exits at the end of stdin.
package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
)

func main() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "ctrload:", err)
		os.Exit(1)
	}
	fmt.Printf("ready %d\n", ln.Addr().(*net.TCPAddr).Port)
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		port, err := once(ln)
		if err != nil {
			fmt.Fprintln(os.Stderr, "ctrload:", err)
			os.Exit(1)
		}
		fmt.Printf("done %d\n", port)
	}
}

func once(ln net.Listener) (int, error) {
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		return 0, err
	}
	s, err := ln.Accept()
	if err != nil {
		return 0, err
	}
	port := c.LocalAddr().(*net.TCPAddr).Port
	if _, err := c.Write([]byte("hello\n")); err != nil {
		return 0, err
	}
	c.Close()
	io.Copy(io.Discard, s)
	return port, s.Close()
}
