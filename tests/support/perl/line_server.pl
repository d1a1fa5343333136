#!/usr/bin/perl
# An IO::Async line server for the interop tests: prints "port N", then for
# each connection answers its first line with "echo: LINE" and "bye" and
# closes. Runs until killed.
use strict;
use warnings;
use IO::Async::Loop;
use IO::Async::Listener;

my $loop = IO::Async::Loop->new;
my $listener = IO::Async::Listener->new(
    on_stream => sub {
        my (undef, $stream) = @_;
        $stream->configure(
            on_read => sub {
                my ($self, $buffref, $eof) = @_;
                if ($$buffref =~ s/^(.*)\n//) {
                    $self->write("echo: $1\n");
                    $self->write("bye\n");
                    $self->close_when_empty;
                }
                return 0;
            },
        );
        $loop->add($stream);
    },
);
$loop->add($listener);
$listener->listen(
    addr => { family => 'inet', socktype => 'stream', ip => '127.0.0.1', port => 0 },
)->get;
$| = 1;
print "port ", $listener->read_handle->sockport, "\n";
$loop->run;
