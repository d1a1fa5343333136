#!/usr/bin/perl
# An IO::Async client for the interop tests: connects to HOST PORT, writes
# N lines, prints each line echoed back, exits 0 once all N came back.
use strict;
use warnings;
use IO::Async::Loop;
use IO::Async::Stream;

my ($host, $port, $n) = @ARGV;
$n ||= 3;
my $loop = IO::Async::Loop->new;
my @got;
my $sock = $loop->connect(host => $host, service => $port, socktype => 'stream')->get;
my $stream = IO::Async::Stream->new(
    handle  => $sock,
    on_read => sub {
        my ($self, $buffref, $eof) = @_;
        while ($$buffref =~ s/^(.*)\n//) {
            push @got, $1;
            $loop->stop if @got == $n;
        }
        die "EOF after " . scalar(@got) . " lines\n" if $eof;
        return 0;
    },
);
$loop->add($stream);
$stream->write("line $_\n") for 1 .. $n;
$loop->watch_time(after => 20, code => sub { die "timed out\n" });
$loop->run;
$| = 1;
print "$_\n" for @got;
exit 0;
