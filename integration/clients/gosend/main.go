// gosend: deliver one message over SMTP STARTTLS with Go's net/smtp and
// crypto/tls (stdlib only), verifying the server against a CA file.
//
//	gosend HOST:PORT SERVERNAME CAFILE HELO FROM RCPT MSGFILE MAXVERSION(1.2|1.3)
//
// SERVERNAME is both SNI and the name verified ("" is not allowed by Go's
// verifier, so an IP address means: no SNI, IP SAN verified). Prints the
// negotiated version and suite on success; exit status 1 on any failure.
package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/smtp"
	"os"
	"time"
)

func fail(f string, a ...interface{}) {
	fmt.Fprintf(os.Stderr, "gosend: "+f+"\n", a...)
	os.Exit(1)
}

func main() {
	if len(os.Args) != 9 {
		fail("usage: gosend HOST:PORT SERVERNAME CAFILE HELO FROM RCPT MSGFILE MAXVERSION")
	}
	addr, name, caFile, helo, from, rcpt, msgFile, maxv := os.Args[1], os.Args[2], os.Args[3],
		os.Args[4], os.Args[5], os.Args[6], os.Args[7], os.Args[8]
	pem, err := os.ReadFile(caFile)
	if err != nil {
		fail("%v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		fail("no certificate in %s", caFile)
	}
	msg, err := os.ReadFile(msgFile)
	if err != nil {
		fail("%v", err)
	}
	cfg := &tls.Config{RootCAs: pool, ServerName: name, MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS13}
	if maxv == "1.2" {
		cfg.MaxVersion = tls.VersionTLS12
	}
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		fail("dial: %v", err)
	}
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	c, err := smtp.NewClient(conn, name)
	if err != nil {
		fail("greeting: %v", err)
	}
	if err = c.Hello(helo); err != nil {
		fail("EHLO: %v", err)
	}
	if ok, _ := c.Extension("STARTTLS"); !ok {
		fail("STARTTLS not advertised")
	}
	if err = c.StartTLS(cfg); err != nil {
		fail("STARTTLS: %v", err)
	}
	st, _ := c.TLSConnectionState()
	if ok, _ := c.Extension("STARTTLS"); ok {
		fail("STARTTLS still advertised under TLS")
	}
	if err = c.Mail(from); err != nil {
		fail("MAIL: %v", err)
	}
	if err = c.Rcpt(rcpt); err != nil {
		fail("RCPT: %v", err)
	}
	w, err := c.Data()
	if err != nil {
		fail("DATA: %v", err)
	}
	if _, err = w.Write(msg); err != nil {
		fail("write: %v", err)
	}
	if err = w.Close(); err != nil {
		fail("end of data: %v", err)
	}
	if err = c.Quit(); err != nil {
		fail("QUIT: %v", err)
	}
	v := map[uint16]string{tls.VersionTLS12: "TLSv1.2", tls.VersionTLS13: "TLSv1.3"}[st.Version]
	fmt.Printf("version=%s suite=%s\n", v, tls.CipherSuiteName(st.CipherSuite))
}
