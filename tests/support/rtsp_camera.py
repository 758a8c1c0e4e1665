"""A real RTSP camera for tests: GStreamer's RTSP server (gst-rtsp-server, through PyGObject)
serving an H.264 MP4 clip in real time at rtsp://127.0.0.1:PORT/PATH, optionally behind
a user and password (Basic, or Digest with ``--digest``). Run by the system Python, which
has the ``gi`` bindings (Debian's python3-gi, gir1.2-gst-rtsp-server-1.0):

    /usr/bin/python3 tests/support/rtsp_camera.py CLIP.mp4 --port 8554 --path /cam

It prints ``ready PORT`` once it listens; every client gets the clip from its start.
"""

from __future__ import annotations

import argparse
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
gi.require_version("GstRtsp", "1.0")
from gi.repository import GLib, Gst, GstRtsp, GstRtspServer  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("clip", help="an MP4 file with one H.264 video track")
    p.add_argument("--port", type=int, default=0, help="0: any free port")
    p.add_argument("--path", default="/cam")
    p.add_argument("--user", help="require this user (with --password)")
    p.add_argument("--password")
    p.add_argument("--digest", action="store_true", help="ask for Digest, not Basic, auth")
    args = p.parse_args()
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(
        f'( filesrc location="{args.clip}" ! qtdemux ! h264parse '
        "! rtph264pay name=pay0 pt=96 config-interval=1 )"
    )
    if args.user:
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, args.user)
        if args.digest:
            auth.set_supported_methods(GstRtsp.RTSPAuthMethod.DIGEST)
            auth.add_digest(args.user, args.password or "", token)
        else:
            basic = GstRtspServer.RTSPAuth.make_basic(args.user, args.password or "")
            auth.add_basic(basic, token)
        server.set_auth(auth)
        permissions = GstRtspServer.RTSPPermissions()
        permissions.add_permission_for_role(args.user, "media.factory.access", True)
        permissions.add_permission_for_role(args.user, "media.factory.construct", True)
        factory.set_permissions(permissions)
    server.get_mount_points().add_factory(args.path, factory)
    if server.attach(None) == 0:
        print(f"cannot listen on port {args.port}", file=sys.stderr)
        return 1
    print(f"ready {server.get_bound_port()}", flush=True)
    GLib.MainLoop().run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
