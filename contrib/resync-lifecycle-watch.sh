#!/bin/bash
# Watch this instance's Auto Scaling target lifecycle state (IMDSv2); when the group starts to
# terminate it, deregister from every member of lb.yaml, wait out the drains, then complete the
# terminating lifecycle action (CONTINUE). See contrib/lifecycle-hook.md.
#
#   resync-lifecycle-watch.sh HOOK [LB_YAML]
set -u
hook=${1:?usage: resync-lifecycle-watch.sh HOOK [LB_YAML]}
config=${2:-/etc/resync/lb.yaml}
imds=${RESYNC_IMDS_ENDPOINT:-http://169.254.169.254}
while sleep 5; do
    token=$(curl -sf --max-time 2 -X PUT "$imds/latest/api/token" \
        -H 'X-aws-ec2-metadata-token-ttl-seconds: 300') || continue
    state=$(curl -sf --max-time 2 -H "X-aws-ec2-metadata-token: $token" \
        "$imds/latest/meta-data/autoscaling/target-lifecycle-state") || continue
    if [ "$state" = Terminated ]; then
        exec /usr/local/bin/resync lb deregister --config "$config" --self --complete-lifecycle "$hook"
    fi
done
