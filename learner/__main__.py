from learner.app import main

main()
