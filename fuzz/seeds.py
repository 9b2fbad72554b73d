#!/usr/bin/env python3
"""Write the small seed corpora in fuzz/corpus/ (re-run to regenerate; the fuzzer only
reads them). rpmdb seeds are made by SQLite and db5.3_load themselves, the rest by hand."""
import io, json, os, shutil, sqlite3, struct, subprocess, tarfile, tempfile, zipfile

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def put(target, name, data):
    os.makedirs(os.path.join(ROOT, target), exist_ok=True)
    with open(os.path.join(ROOT, target, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def header(name, version, release, arch="x86_64", epoch=None):
    data, entries = b"", []
    for tag, text in [(1000, name), (1001, version), (1002, release), (1004, "s"), (1022, arch)]:
        entries.append((tag, 6, len(data), 1))
        data += text.encode() + b"\0"
    if epoch is not None:
        data += b"\0" * (-len(data) % 4)
        entries.append((1003, 4, len(data), 1))
        data += struct.pack(">I", epoch)
    blob = struct.pack(">II", len(entries), len(data))
    for e in entries:
        blob += struct.pack(">IIII", *e)
    return blob + data


HEADERS = [header("openssl-libs", "1.1.1k", "12.el8", epoch=1), header("bash", "5.1", "6.el9")]

DPKG = "Package: libc6\nStatus: install ok installed\nArchitecture: amd64\nSource: glibc\nVersion: 2.36-9+deb12u4\n\nPackage: zlib1g\nStatus: install ok installed\nVersion: 1:1.2.13.dfsg-1\n\nPackage: libbz2-1.0\nStatus: install ok installed\nSource: bzip2 (1.0.8-5)\nVersion: 1.0.8-5+b1\n"
APK = "C:Q1abc=\nP:musl\nV:1.2.4-r2\nA:x86_64\no:musl\n\nP:busybox\nV:1.36.1-r5\n\nP:libcrypto3\nV:3.3.2-r0\no:openssl\n"
OS_RELEASE = 'ID=debian\nVERSION_ID="12"\nPRETTY_NAME="Debian GNU/Linux 12"\n'
METADATA = "Metadata-Version: 2.1\nName: requests\nVersion: 2.31.0\n"
DEPS = json.dumps({"targets": {".NETCoreApp,Version=v8.0": {}}, "libraries": {"Newtonsoft.Json/13.0.1": {"type": "package"}}})


def tar(files):
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as t:
        for name, data in files:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return out.getvalue()


# The MIT License as the SPDX list words it (license_file's seed).
MIT_TEXT = """MIT License

Copyright (c) <year> <copyright holders>

Permission is hereby granted, free of charge, to any person obtaining a copy of this software and
associated documentation files (the "Software"), to deal in the Software without restriction, including
without limitation the rights to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is furnished to do so, subject to the
following conditions:

The above copyright notice and this permission notice shall be included in all copies or substantial
portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED, INCLUDING BUT NOT
LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO
EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER LIABILITY, WHETHER
IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM, OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE
USE OR OTHER DEALINGS IN THE SOFTWARE.
"""


WRITTEN = ["admission_review", "attestation", "binaries", "cron", "htpasswd", "java_archives", "layer_tar",
           "oci_referrers", "osv", "package_databases", "registry_auth", "release_manifest",
           "rpmdb_bdb", "rpmdb_sqlite", "shell", "trusted_root", "version_order"]


def main():
    # Only the corpora written below; the others (federation_bundle, sigstore_bundle,
    # exploit_feeds, lean_decode, reports_query, vex) are committed as they are.
    for target in WRITTEN:
        shutil.rmtree(os.path.join(ROOT, target), ignore_errors=True)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "rpmdb.sqlite")
        db = sqlite3.connect(path)
        db.execute("CREATE TABLE Packages (hnum INTEGER PRIMARY KEY AUTOINCREMENT, blob BLOB NOT NULL)")
        for blob in HEADERS:
            db.execute("INSERT INTO Packages (blob) VALUES (?)", (blob,))
        db.commit()
        db.close()
        sqlite_bytes = open(path, "rb").read()
        put("rpmdb_sqlite", "two-packages.sqlite", sqlite_bytes)
        put("rpmdb_sqlite", "header", HEADERS[0])
        dump = "VERSION=3\nformat=bytevalue\ntype=hash\nHEADER=END\n"
        dump += " 00000000\n %s\n" % struct.pack("<I", len(HEADERS) + 1).hex()
        for i, blob in enumerate(HEADERS):
            dump += " %s\n %s\n" % (struct.pack("<I", i + 1).hex(), blob.hex())
        dump += "DATA=END\n"
        bdb = os.path.join(tmp, "Packages")
        if shutil.which("db5.3_load"):
            subprocess.run(["db5.3_load", "-f", "/dev/stdin", bdb], input=dump.encode(), check=True)
            put("rpmdb_bdb", "two-packages.bdb", open(bdb, "rb").read())
        else:
            put("rpmdb_bdb", "magic", b"\0" * 12 + bytes([0x61, 0x15, 0x06, 0x00]) + b"\0" * 48)
    layer = tar([("etc/os-release", OS_RELEASE.encode()), ("var/lib/dpkg/status", DPKG.encode()),
                 ("lib/apk/db/installed", APK.encode()),
                 ("usr/lib/python3/site-packages/requests-2.31.0.dist-info/METADATA", METADATA.encode()),
                 ("var/lib/rpm/rpmdb.sqlite", sqlite_bytes)])
    put("layer_tar", "layer.tar", layer)
    for name, text in [("dpkg-status", DPKG), ("apk-installed", APK), ("os-release", OS_RELEASE),
                       ("METADATA", METADATA), ("deps.json", DEPS)]:
        put("package_databases", name, text)
    jar = io.BytesIO()
    with zipfile.ZipFile(jar, "w") as z:
        z.writestr("META-INF/MANIFEST.MF", "Manifest-Version: 1.0\nImplementation-Title: demo\nImplementation-Version: 1.2\n")
        z.writestr("META-INF/maven/org.example/demo/pom.properties", "groupId=org.example\nartifactId=demo\nversion=1.2\n")
    put("binaries", "demo.jar", jar.getvalue())
    # java_archives: 0x00 + a Spring Boot jar (a jar stored inside, a WAR deflated inside
    # holding another), 0x01 + a pom.xml, 0x02 + a MANIFEST.MF.
    pom = ('<?xml version="1.0"?>\n<project xmlns="http://maven.apache.org/POM/4.0.0"><licenses>'
           '<license><name>The Apache Software License, Version 2.0</name>'
           '<url>https://www.apache.org/licenses/LICENSE-2.0.txt</url></license>'
           '<license><name>MIT &amp; more</name><url><![CDATA[https://opensource.org/licenses/MIT]]></url></license>'
           '</licenses></project>\n')
    manifest = ("Manifest-Version: 1.0\r\nBundle-License: https://www.apache.org/licenses/LICENSE-2.0.tx\r\n t"
                ';link="https://www.apache.org/licenses/LICENSE-2.0", MIT\r\n\r\nName: x\r\n')
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("META-INF/MANIFEST.MF", manifest)
        z.writestr("META-INF/maven/org.example/lib/pom.properties", "groupId=org.example\nartifactId=lib\nversion=2.0\n")
    war = io.BytesIO()
    with zipfile.ZipFile(war, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("WEB-INF/lib/lib.jar", inner.getvalue())
    boot = io.BytesIO()
    with zipfile.ZipFile(boot, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("META-INF/maven/org.example/app/pom.properties", "groupId=org.example\nartifactId=app\nversion=1.0\n")
        z.writestr("META-INF/maven/org.example/app/pom.xml", pom)
        z.writestr(zipfile.ZipInfo("BOOT-INF/lib/lib.jar"), inner.getvalue(), zipfile.ZIP_STORED)
        z.writestr("app.war", war.getvalue())
    put("java_archives", "spring-boot.jar", b"\x00" + boot.getvalue())
    put("java_archives", "pom.xml", b"\x01" + pom.encode())
    put("java_archives", "MANIFEST.MF", b"\x02" + manifest.encode())
    put("java_archives", "LICENSE", b"\x03" + MIT_TEXT.encode())
    # The start of a Go binary's build info blob and a minimal ELF header.
    put("binaries", "go-buildinfo", b"\xff Go buildinf:\x08\x02" + b"\0" * 16 + b"\x06go1.22" + b"\x20path\texample.com/app\nmod\texample.com/app\t(devel)\t\n")
    put("binaries", "elf-header", b"\x7fELF\x02\x01\x01" + b"\0" * 9 + struct.pack("<HHIQQQIHHHHHH", 2, 62, 1, 0, 64, 0, 0, 64, 56, 0, 64, 0, 0))
    for i, script in enumerate([
        "#!/bin/sh\nset -e\nif [ \"$1\" = 'serve' ]; then\n  shift\n  exec /app/server \"$@\"\nfi\nexec \"$@\"\n",
        "cd /srv && FOO=bar exec env A=1 python3 -m app --port ${PORT:-80} 2>&1 | tee log &\n",
        "main() {\n  local x=\"$(id -u)\"\n  cat <<-EOF >/tmp/x\n\tbody $x\n\tEOF\n  exec gosu app \"$@\"\n}\nmain \"$@\" # done\n",
        "echo 'unterminated\n",
        "a=`date`; b=${c:+alt}; . ./lib.sh; source \"$b\"; exec ${a#x}\n",
    ]):
        put("shell", "script-%d" % i, script)
    osv = {"id": "GHSA-aaaa-bbbb-cccc", "modified": "2024-05-01T00:00:00Z", "published": "2024-04-01T00:00:00Z",
           "summary": "demo", "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}],
           "affected": [{"package": {"ecosystem": "PyPI", "name": "requests"},
                         "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "2.31.0"}]}]},
                        {"package": {"ecosystem": "Debian:12", "name": "glibc"}, "versions": ["2.36-9"]}]}
    put("osv", "ghsa.json", json.dumps(osv))
    review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "u1", "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
        "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
        "namespace": "shop", "operation": "CREATE", "userInfo": {"username": "alice"}, "dryRun": False,
        "object": {"metadata": {"name": "web"}, "spec": {"template": {"spec": {
            "initContainers": [{"name": "init", "image": "busybox:1.36"}],
            "containers": [{"name": "web", "image": "registry.example.com/shop/web@sha256:" + "a" * 64}]}}}}}}
    put("admission_review", "deployment.json", json.dumps(review))
    put("htpasswd", "users", "alice:$2y$05$abcdefghijklmnopqrstuu5Tr6uVZbHk1bX8o0s2sVV5kYl1ZxW.K\n# comment\nbob:$2b$04$0123456789012345678901\n")
    for i, expr in enumerate(["*/5 * * * *", "0 0 29 2 *", "@daily", "30 2 * * MON-FRI", "0 0,12 1-7 */2 SUN"]):
        put("cron", "expr-%d" % i, expr)
    for i, (scheme, versions) in enumerate([
            (0, "1:2.36-9+deb12u4\n2.36-9\n2.36~rc1-1"), (1, "1.2.4-r2\n1.2.4_rc1-r0\n1.2.4-r10"),
            (2, "2.31.0\n2.31.0rc1\n1!0.1.post2.dev3"), (3, "1.0-SNAPSHOT\n1.0\n1.0-alpha-1"),
            (4, "1.2.3-beta.1\n1.2.3\n1.10.0"), (5, "1:1.1.1k-12.el8\n1.1.1k-2.el8~1\n1.1.1^git1-1")]):
        put("version_order", "scheme-%d" % i, bytes([scheme]) + versions.encode())
    # oci_referrers: a referrers index and a signature/attestation manifest.
    put("oci_referrers", "index.json", json.dumps({"schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "artifactType": "application/vnd.dev.cosign.artifact.sig.v1+json",
            "digest": "sha256:" + "1" * 64, "size": 12, "annotations": {"a": "b"}}]}))
    put("oci_referrers", "manifest.json", json.dumps({"schemaVersion": 2, "layers": [
        {"mediaType": "application/vnd.dev.cosign.simplesigning.v1+json", "digest": "sha256:" + "2" * 64,
         "size": 3, "annotations": {"dev.cosignproject.cosign/signature": "MEU=",
                                    "dev.sigstore.cosign/certificate": "-----BEGIN CERTIFICATE-----"}},
        {"mediaType": "application/vnd.dsse.envelope.v1+json", "digest": "sha256:" + "3" * 64, "size": 3,
         "annotations": {"predicateType": "https://slsa.dev/provenance/v1"}}]}))
    # sigstore_bundle: bundles (DSSE v0.3, message signature v0.3, certificate chain v0.2)
    # and a checkpoint made by admission-webhook/tests/it/bundle_material.py, kept as
    # committed (not regenerated here).
    # attestation: 0x00 + a DSSE envelope of an in-toto Statement; 0x01 + a Statement.
    statement = {"_type": "https://in-toto.io/Statement/v1",
                 "subject": [{"name": "app", "digest": {"sha256": "1" * 64}}],
                 "predicateType": "https://slsa.dev/provenance/v1",
                 "predicate": {"runDetails": {"builder": {"id": "https://github.com/x"}}, "list": [1, 2.5, None]}}
    import base64
    put("attestation", "envelope", b"\x00" + json.dumps({
        "payloadType": "application/vnd.in-toto+json",
        "payload": base64.b64encode(json.dumps(statement).encode()).decode(),
        "signatures": [{"keyid": "", "sig": "MEUCIQ=="}]}).encode())
    put("attestation", "statement", b"\x01" + json.dumps(statement).encode())
    # 0x02 (v0.3 media type), 0x08 (the same, predicate type announced), 0x05 (v0.2) + a
    # Sigstore bundle carrying that Statement: the committed sigstore_bundle seed with its
    # payload replaced (so its signature no longer verifies), keyless and keyed.
    with open(os.path.join(ROOT, "sigstore_bundle", "good.json")) as f:
        bundle = json.load(f)
    bundle["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    put("attestation", "bundle", b"\x02" + json.dumps(bundle).encode())
    put("attestation", "bundle-announced", b"\x08" + json.dumps(bundle).encode())
    keyed = json.loads(json.dumps(bundle))
    keyed["mediaType"] = "application/vnd.dev.sigstore.bundle+json;version=0.2"
    del keyed["verificationMaterial"]["certificate"]
    keyed["verificationMaterial"]["publicKey"] = {"hint": "fuzz"}
    put("attestation", "bundle-keyed", b"\x05" + json.dumps(keyed).encode())
    # registry_auth: 0x00 + a registry's WWW-Authenticate, 0x01 + a pull Secret's config.
    put("registry_auth", "bearer", b"\x00" + b'Bearer realm="https://auth.example/token",service="registry.example",scope="repository:app:pull"')
    put("registry_auth", "basic", b"\x00" + b'Basic realm="registry"')
    put("registry_auth", "dockerconfig", b"\x01" + json.dumps({"auths": {
        "https://registry.example/v1/": {"auth": base64.b64encode(b"user:pass").decode()},
        "index.docker.io": {"username": "u", "password": "p"}}}).encode())
    # release_manifest: the Platform sample's signature, key and manifest, NUL-separated.
    sample = os.path.join(os.path.dirname(ROOT), "..", "config", "samples", "platform-release.yaml")
    with open(sample) as f:
        lines = f.read().split("\n")
    def block(key):
        start = next(i for i, l in enumerate(lines) if l.strip() == key + ": |") + 1
        body = []
        for l in lines[start:]:
            if l and not l.startswith("    "):
                break
            body.append(l[4:])
        return "\n".join(body).strip() + "\n"
    signature = next(l.split(": ", 1)[1] for l in lines if l.strip().startswith("release.yaml.sig:"))
    put("release_manifest", "sample", b"\0".join([signature.encode(), block("cosign.pub").encode(), block("release.yaml").encode()]))
    # trusted_root: Sigstore's public-good root as sigstore-python ships it (installed by
    # scripts/services.sh into .test-services/venv), when it is there.
    venv = os.path.join(os.path.dirname(ROOT), "..", ".test-services", "venv", "lib")
    for dirpath, _, files in os.walk(venv):
        if "trusted_root.json" in files and "tuf-repo-cdn.sigstore.dev" in dirpath:
            with open(os.path.join(dirpath, "trusted_root.json"), "rb") as f:
                put("trusted_root", "public-good.json", f.read())
    # federation_bundle: a real (unsigned) bundle exported by `stellaops-worker federation
    # bundle export` after ingesting osv/ghsa.json, kept as committed (not regenerated here):
    # "unsigned-bundle" = 0x00 + the .zst file, "unsigned-bundle-tar" = 0x01 + its tar.


main()
