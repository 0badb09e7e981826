import sys

from chaos.soak import main

sys.exit(main(sys.argv[1:]))
