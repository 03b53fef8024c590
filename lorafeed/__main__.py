from lorafeed.cli import main

main()
