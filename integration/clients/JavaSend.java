// JavaSend: deliver one message over SMTP STARTTLS with javax.net.ssl
// (SSLSocket layered over the plain socket after "220 ready"), trusting only
// the CA PEM (CertificateFactory -> in-memory KeyStore) and verifying the
// server name (endpoint identification "HTTPS").
//
//   java -cp DIR JavaSend HOST PORT SNI CAFILE HELO FROM RCPT DOTSTUFFED_MSGFILE PROTOCOL
//
// PROTOCOL: TLSv1.3 or TLSv1.2. DOTSTUFFED_MSGFILE already ends with CRLF.CRLF.
// Prints "version=... suite=..." on success; exit status 1 on any failure.
import java.io.*;
import java.net.*;
import java.nio.charset.StandardCharsets;
import java.nio.file.*;
import java.security.KeyStore;
import java.security.cert.*;
import java.util.*;
import javax.net.ssl.*;

public class JavaSend {
    static InputStream in;
    static OutputStream out;

    static String reply(int want) throws IOException {
        StringBuilder all = new StringBuilder();
        while (true) {
            StringBuilder line = new StringBuilder();
            int ch;
            while ((ch = in.read()) != '\n') {
                if (ch < 0) throw new IOException("connection closed; got " + all + line);
                if (ch != '\r') line.append((char) ch);
            }
            all.append(line).append('\n');
            if (line.length() < 4 || line.charAt(3) == ' ') {
                int code = Integer.parseInt(line.substring(0, 3));
                if (code != want) throw new IOException("want " + want + ", got: " + all);
                return all.toString();
            }
        }
    }

    static String cmd(String c, int want) throws IOException {
        out.write((c + "\r\n").getBytes(StandardCharsets.US_ASCII));
        out.flush();
        return reply(want);
    }

    public static void main(String[] a) throws Exception {
        if (a.length != 9) { System.err.println("usage: JavaSend HOST PORT SNI CAFILE HELO FROM RCPT MSGFILE PROTOCOL"); System.exit(1); }
        String host = a[0], sni = a[2], helo = a[4], from = a[5], rcpt = a[6], proto = a[8];
        int port = Integer.parseInt(a[1]);
        KeyStore ks = KeyStore.getInstance(KeyStore.getDefaultType());
        ks.load(null, null);
        try (InputStream ca = new FileInputStream(a[3])) {
            int i = 0;
            for (java.security.cert.Certificate c : CertificateFactory.getInstance("X.509").generateCertificates(ca))
                ks.setCertificateEntry("ca" + i++, c);
        }
        TrustManagerFactory tmf = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
        tmf.init(ks);
        SSLContext ctx = SSLContext.getInstance("TLS");
        ctx.init(null, tmf.getTrustManagers(), null);
        byte[] msg = Files.readAllBytes(Paths.get(a[7]));

        Socket plain = new Socket();
        plain.connect(new InetSocketAddress(host, port), 10000);
        plain.setSoTimeout(30000);
        in = new BufferedInputStream(plain.getInputStream());
        out = plain.getOutputStream();
        reply(220);
        String ehlo = cmd("EHLO " + helo, 250);
        if (!ehlo.toUpperCase().contains("STARTTLS")) throw new IOException("STARTTLS not advertised: " + ehlo);
        cmd("STARTTLS", 220);
        SSLSocket s = (SSLSocket) ctx.getSocketFactory().createSocket(plain, sni, port, true);
        SSLParameters p = s.getSSLParameters();
        p.setProtocols(new String[] {proto});
        p.setServerNames(List.of(new SNIHostName(sni)));
        p.setEndpointIdentificationAlgorithm("HTTPS");
        s.setSSLParameters(p);
        s.setSoTimeout(30000);
        s.startHandshake();
        in = new BufferedInputStream(s.getInputStream());
        out = s.getOutputStream();
        ehlo = cmd("EHLO " + helo, 250);
        if (ehlo.toUpperCase().contains("STARTTLS")) throw new IOException("STARTTLS advertised under TLS: " + ehlo);
        cmd("MAIL FROM:<" + from + ">", 250);
        cmd("RCPT TO:<" + rcpt + ">", 250);
        cmd("DATA", 354);
        out.write(msg);
        out.flush();
        reply(250);
        cmd("QUIT", 221);
        SSLSession ss = s.getSession();
        System.out.println("version=" + ss.getProtocol() + " suite=" + ss.getCipherSuite());
        s.close();
    }
}
