/* Which libsrtp build costs least (docs/benchmarks.md 4b, "Which libsrtp"): protect + unprotect of
 * one 172-byte RTP packet (PCMU, 20 ms) per session, round robin over N sessions as the engine's
 * legs take their turns. Not part of the build: compiled by hand against each libsrtp 2 to compare,
 * with the headers of Debian's libsrtp2-dev (the policy struct is the same in 2.5 and 2.7), from
 * the repository's root (the wheel's library has no soname: the program names it by this path):
 *
 *   gcc -O2 -o /tmp/cost_debian bench/srtp_backends.c -lsrtp2          # Debian's libsrtp2 (NSS)
 *   W=.venv/lib/python3.11/site-packages/pylibsrtp/_binding.abi3.so     # pylibsrtp's wheel
 *   PY=$(python3 -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR"))')
 *   gcc -O2 -o /tmp/cost_wheel bench/srtp_backends.c $W -L$PY -lpython3.11 -Wl,-rpath,$PY
 *
 * Run: PROGRAM cm80|cm32|gcm128|gcm256 SESSIONS ROUNDS; prints CPU ns per protect + unprotect.
 * Instructions: valgrind --tool=callgrind at two ROUNDS, difference / (extra rounds * SESSIONS).
 */
#include <srtp2/srtp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int profile_named(const char *name, srtp_profile_t *profile)
{
    static const struct { const char *name; srtp_profile_t profile; } known[] = {
        {"cm80", srtp_profile_aes128_cm_sha1_80},
        {"cm32", srtp_profile_aes128_cm_sha1_32},
        {"gcm128", srtp_profile_aead_aes_128_gcm},
        {"gcm256", srtp_profile_aead_aes_256_gcm},
    };
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (strcmp(name, known[i].name) == 0) {
            *profile = known[i].profile;
            return 0;
        }
    return -1;
}

static void put32(unsigned char *at, unsigned value)
{
    at[0] = value >> 24, at[1] = value >> 16, at[2] = value >> 8, at[3] = value;
}

int main(int argc, char **argv)
{
    srtp_profile_t profile;
    if (argc != 4 || profile_named(argv[1], &profile) != 0) {
        fprintf(stderr, "usage: %s cm80|cm32|gcm128|gcm256 SESSIONS ROUNDS\n", argv[0]);
        return 2;
    }
    int sessions = atoi(argv[2]), rounds = atoi(argv[3]);
    if (sessions < 1 || rounds < 1 || srtp_init() != srtp_err_status_ok)
        return 2;
    srtp_t *senders = calloc(sessions, sizeof *senders), *receivers = calloc(sessions, sizeof *receivers);
    unsigned char key[64];
    for (int i = 0; i < sessions; i++) {
        for (size_t j = 0; j < sizeof key; j++)
            key[j] = (unsigned char)rand();
        srtp_policy_t policy;
        memset(&policy, 0, sizeof policy);
        if (srtp_crypto_policy_set_from_profile_for_rtp(&policy.rtp, profile) ||
            srtp_crypto_policy_set_from_profile_for_rtcp(&policy.rtcp, profile))
            return 3;  /* a profile this libsrtp was built without (GCM needs a crypto library) */
        policy.key = key;
        policy.window_size = 128;
        policy.ssrc.type = ssrc_any_outbound;
        if (srtp_create(&senders[i], &policy))
            return 3;
        policy.ssrc.type = ssrc_any_inbound;
        if (srtp_create(&receivers[i], &policy))
            return 3;
    }
    unsigned char packet[1500];
    struct timespec start, end;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &start);
    for (int round = 0; round < rounds; round++)
        for (int i = 0; i < sessions; i++) {
            packet[0] = 0x80, packet[1] = 0, packet[2] = round >> 8, packet[3] = round;
            put32(packet + 4, round * 160);
            put32(packet + 8, i + 1);
            memset(packet + 12, 0xff, 160);
            int length = 172;
            if (srtp_protect(senders[i], packet, &length) ||
                srtp_unprotect(receivers[i], packet, &length) || length != 172)
                return 4;
        }
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &end);
    double ns = (end.tv_sec - start.tv_sec) * 1e9 + (end.tv_nsec - start.tv_nsec);
    printf("%s: %.0f ns per protect + unprotect\n", argv[1], ns / ((double)rounds * sessions));
    return 0;
}
